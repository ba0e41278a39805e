"""States of the Alerts page (rules, the rule editor, incidents, one incident) and their display rows."""
