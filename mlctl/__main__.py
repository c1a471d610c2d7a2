from mlctl.cli import main

main()
