from tomstream.cli import main

main()
