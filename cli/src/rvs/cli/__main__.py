from rvs.cli.main import main

main()
