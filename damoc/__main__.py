from damoc.cli import main

main()
