"""Accounts on the private Dovecot test backend (and the demo).

Passwords are distinctive so a leak into a log is greppable."""
BACKEND_USERS = {
    "user1": "user1-Pw-7fQx",
    "user2": "user2-Pw-K3vd",
    "user3": "user3-Pw-Zr8m",
    "alice": "alice-pw",
}
MASTER_USERS = {"master": "master-Pw-Q4nb"}
