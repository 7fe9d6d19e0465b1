"""Domain operations, one module per domain; each function takes a Session first.

Functions flush but leave the commit to the caller: none commits, rolls back
or closes the caller's session. What must outlast the caller's rollback (a
refused login or code, a lockout) is written in a short transaction of its own
on the same engine, which commits nothing the caller has pending (see
:mod:`pfd_db.store.own_transaction`).

Refused credentials are signalled one way. Every function that checks a
credential, ``users.authenticate`` (password), ``sessions.resolve`` (session
token), ``api_keys.verify`` (API key), ``twofactor.verify_totp``,
``twofactor.confirm_setup`` (TOTP code) and ``twofactor.use_backup_code``,
returns what the credential opens (the user, the session, the key record) or
nothing, and otherwise raises :class:`~pfd_db.errors.AuthenticationFailed`: its
``reason`` says why, for logs ("wrong password", "expired", "unknown key",
...), and its message is safe to show. :class:`~pfd_db.errors.RateLimited`, an
AuthenticationFailed too, says the credential was not even checked because of
too many recent failures (reason "locked", "account locked" or "rate limited").
A credential of the wrong shape (too short, a stray character, a NUL) is a
refusal like any other; only an argument that is not a string at all is
:class:`~pfd_db.errors.InvalidInput`. (``passwords.verify_password`` compares a
password with a hash and answers True or False: it checks no login.)
"""
