"""Scheduled jobs: schedule, store, runner, the daily and maintenance jobs, the daily report, account snapshots.
May import the faces, core/, market/, notify/ and persistence/; never main or web_server."""
