from polyroute.cli import main

main()
