"""Parts of the dbt engine: task spec, profiles, the child process entry, lineage and OpenLineage."""
