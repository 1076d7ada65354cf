from janus_cli.cli import main

main()
