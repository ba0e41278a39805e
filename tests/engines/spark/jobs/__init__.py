"""Small Spark applications the Spark engine tests submit."""
