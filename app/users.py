"""`python -m app.users set-password EMAIL [-c galaxy.yml] [--stdin]`: Muleteer's users from
the server's account (app/accounts.py, main). `./run.sh --reset-password EMAIL` runs it."""
from app.accounts import main

if __name__ == "__main__":
    raise SystemExit(main())
