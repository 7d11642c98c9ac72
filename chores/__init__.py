"""Idle cash chores of a retail account (issue 28 §3): new share / new bond subscription with its allotments (中签)
and payment due, and the overnight treasury reverse repo; rules, store and the two scheduled jobs.
May import the faces, core/, jobs/, market/ and persistence/; never main, web_server, qmt/ or webapi/."""
