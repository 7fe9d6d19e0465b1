"""A remote client for training jobs: the store's training verbs over HTTP.

    from pfd_db.client import Client

    with Client("http://127.0.0.1:8000", api_key) as client:
        run = client.create_experiment("resnet-7", "cnn1d", "Default", {"lr": 0.01})
        client.start(run)
        client.log_epoch(run, 0, train_loss=0.9, val_loss=1.0, train_accuracy=0.6,
                         val_accuracy=0.55)
        client.finish(run)

It needs only httpx and :mod:`pfd_db.errors`: no database driver, ORM or server
code is imported, so a GPU machine installs pfd-db and talks to ``pfd-db serve``
without the database's credentials. See :mod:`pfd_db.client.remote`.
"""

from pfd_db.client.remote import Client

__all__ = ["Client"]
