"""Support for the Spark engine: log4j2 configuration, REST progress polling, reading Delta tables in jobs."""
