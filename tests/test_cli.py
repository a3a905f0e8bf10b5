"""The CLI's module table (which commands each module registers, and the extra they need) matches the app."""

from __future__ import annotations

from audios.cli import COMMAND_MODULES, MISSING, app


def test_command_table_matches_what_the_modules_register():
    registered: dict[str, set[str]] = {}
    for c in app.registered_commands:
        module = c.callback.__module__.rsplit(".", 1)[-1]
        registered.setdefault(module, set()).add(c.name or c.callback.__name__)
    assert MISSING == {}  # the full install loads every module
    for module, (commands, _extra) in COMMAND_MODULES.items():
        assert registered.get(module) == set(commands), module
    listed = {m for m in COMMAND_MODULES}
    assert set(registered) - {"cli"} == listed  # `tasks` lives in audios.cli itself
