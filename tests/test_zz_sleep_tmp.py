import time
def test_sleep(pg_server):
    time.sleep(30)
