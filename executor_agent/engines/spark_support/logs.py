"""Per-task log4j2 configuration for Spark and reading the level of each streamed log line."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from string import Template

from executor_agent.engines.base import Level

LOG4J_TEMPLATE = "log4j2.properties.template"
LOG4J_LEVELS = ("trace", "debug", "info", "warn", "error", "fatal", "off", "all")

# "2026-11-26T02:51:04,079 INFO SparkContext: ..." — the layout our template writes.
_LOG4J_LINE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[,.]\d+ (TRACE|DEBUG|INFO|WARN|ERROR|FATAL) ")
# Spark's default layout ("26/11/26 02:51:04 WARN ..."), seen when a job brings its own log4j2 file.
_SPARK_DEFAULT_LINE = re.compile(r"^\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} (TRACE|DEBUG|INFO|WARN|ERROR|FATAL) ")
# Python's logging.basicConfig layout ("WARNING:root:...") and the JVM's own "WARNING: ..." notices.
_PYTHON_LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL):")

_TO_LEVEL: dict[str, Level] = {
    "TRACE": "debug",
    "DEBUG": "debug",
    "INFO": "info",
    "WARN": "warning",
    "WARNING": "warning",
    "ERROR": "error",
    "FATAL": "error",
    "CRITICAL": "error",
}


def render_log4j_config(*, log_file: Path, root_level: str = "info") -> str:
    """The log4j2 properties text that logs to the console and to ``log_file`` at ``root_level``."""
    if root_level.lower() not in LOG4J_LEVELS:
        raise ValueError(f"log level {root_level!r} is not a log4j level ({', '.join(LOG4J_LEVELS)})")
    template = Template(resources.files(__package__).joinpath(LOG4J_TEMPLATE).read_text(encoding="utf-8"))
    # Backslashes are escapes in a properties file; a Windows-style path must survive them.
    return template.substitute(log_file=str(log_file).replace("\\", "\\\\"), root_level=root_level.lower())


def write_spark_conf_dir(conf_dir: Path, *, log_file: Path, root_level: str = "info") -> Path:
    """Create a SPARK_CONF_DIR holding the task's log4j2.properties; returns the properties file."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    properties = conf_dir / "log4j2.properties"
    properties.write_text(render_log4j_config(log_file=log_file, root_level=root_level), encoding="utf-8")
    return properties


class LogLevelReader:
    """Reads the level of each line a Spark child prints.

    A line in a known layout carries its own level. A Python traceback is an error from its
    "Traceback" line through the exception line that ends it, on either stream (spark-submit hands
    the driver's stderr on through stdout). Other stderr lines continue the record before them (a
    Java stack trace, a multi-line message); other stdout lines are the job's prints: info.
    """

    def __init__(self) -> None:
        self._last: dict[str, Level] = {}
        self._in_traceback: set[str] = set()

    def level_of(self, stream: str, line: str) -> Level:
        for pattern in (_LOG4J_LINE, _SPARK_DEFAULT_LINE, _PYTHON_LINE):
            match = pattern.match(line)
            if match:
                level = _TO_LEVEL[match.group(1)]
                self._last[stream] = level
                self._in_traceback.discard(stream)
                return level
        if line.startswith("Traceback (most recent call last)"):
            self._in_traceback.add(stream)
            self._last[stream] = "error"
            return "error"
        if stream in self._in_traceback:
            if line and not line[0].isspace():
                self._in_traceback.discard(stream)  # "ValueError: ...": the exception line ends it
            return "error"
        if stream == "stdout":
            return "info"
        return self._last.get(stream, "info")
