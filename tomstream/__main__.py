from tomstream.shell.cli import main

main()
