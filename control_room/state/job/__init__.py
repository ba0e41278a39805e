"""The job page's state, split by concern: detail.py (template, versions, DAG, schedules, runs), run_form.py,
history.py (figures), versions.py (diff), schedules.py (editor, fires), backfills.py; editor.py is the YAML
editor shared with the Jobs page."""
