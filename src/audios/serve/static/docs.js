"use strict";
// A small, local reader of the OpenAPI schema: one card per operation with its parameters and responses.
(async function () {
  const main = document.getElementById("endpoints");
  const el = (tag, text, cls) => {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  };
  let spec;
  try {
    spec = await (await fetch("/openapi.json")).json();
  } catch (e) {
    main.textContent = "Could not load /openapi.json: " + e.message;
    return;
  }
  main.textContent = "";
  const intro = el("section");
  intro.appendChild(el("h2", spec.info.title + " " + spec.info.version));
  if (spec.info.description) intro.appendChild(el("p", spec.info.description));
  main.appendChild(intro);
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const card = el("section");
      card.appendChild(el("h3", method.toUpperCase() + " " + path));
      if (op.summary) card.appendChild(el("p", op.summary));
      if (op.description) card.appendChild(el("p", op.description, "muted"));
      if (op.parameters && op.parameters.length) {
        const list = el("ul");
        op.parameters.forEach((p) => list.appendChild(el("li", p.name + " (" + p.in + ")" +
          (p.description ? ": " + p.description : ""))));
        card.appendChild(el("h4", "Parameters"));
        card.appendChild(list);
      }
      const responses = el("ul");
      Object.entries(op.responses || {}).forEach(([code, r]) => responses.appendChild(el("li", code + ": " + r.description)));
      card.appendChild(el("h4", "Responses"));
      card.appendChild(responses);
      main.appendChild(card);
    }
  }
})();
