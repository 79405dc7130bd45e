"""`edgeasr fleet`: personalised exports for many users from one base model, on Ray.

users.py   the users file, row by row (a bad row fails that user alone)
store.py   the output folder: users' export folders, identical files stored once, a record per user
worker.py  the Ray actor: loads the model once, exports user after user
report.py  fleet.json and fleet.md
run.py     run_fleet(): read, skip what is done, export on Ray with retries, report
"""
