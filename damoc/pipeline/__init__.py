"""Run orchestration: run directories, plans, executors, leaderboards."""
