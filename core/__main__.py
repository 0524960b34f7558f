from rvs.cli import main

main()
