from audios.cli import main

main()
