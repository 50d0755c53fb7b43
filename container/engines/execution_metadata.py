"""The notebook- and cell-level `metadata.papermill` that papermill writes, for the local engine.

A port of papermill 2.6.0 (nteract/papermill, tag 2.6.0), metadata only (no saving, progress bar or
logging):
- papermill/iorw.py load_notebook_node: a notebook without `metadata.papermill` gets
  default_parameters, parameters, environment_variables and version; every cell gets `tags` and
  an empty `papermill` dict;
- papermill/execute.py prepare_notebook_metadata: input_path and output_path;
- papermill/engines.py NotebookExecutionManager: notebook_start, cell_start, cell_exception,
  cell_complete and notebook_complete, with the same field names, status values and times
  (`datetime.utcnow().isoformat()`: UTC without an offset, e.g. 2026-01-02T03:04:05.678901).

The papermill driver gets all of this from papermill itself; `complete_notebook_metadata` fills in
what papermill leaves out when the notebook already carries `metadata.papermill` (the runner injects
parameters and records them there before either engine runs), so both engines write all four keys.
"""
from __future__ import annotations

import datetime

# The papermill release whose format the local engine writes; recorded as `version`.
PAPERMILL_VERSION = '2.6.0'

PENDING = 'pending'
RUNNING = 'running'
COMPLETED = 'completed'
FAILED = 'failed'


def complete_notebook_metadata(nb, version: str) -> None:
    """The four keys papermill's load_notebook_node writes, where missing (values kept otherwise)."""
    papermill = nb.metadata.setdefault('papermill', {})
    papermill.setdefault('default_parameters', {})
    papermill.setdefault('parameters', {})
    papermill.setdefault('environment_variables', {})
    papermill.setdefault('version', version)


class ExecutionMetadata:
    """papermill's NotebookExecutionManager, reduced to the metadata it writes."""

    def __init__(self, nb, input_path: str, output_path: str):
        self.nb = nb
        self.start_time: datetime.datetime | None = None
        complete_notebook_metadata(nb, PAPERMILL_VERSION)
        for cell in nb.cells:
            cell.metadata.setdefault('tags', [])
            cell.metadata.setdefault('papermill', {})
        nb.metadata.papermill['input_path'] = input_path
        nb.metadata.papermill['output_path'] = output_path

    @staticmethod
    def now() -> datetime.datetime:
        # papermill 2.6.0: datetime.utcnow() (naive); the same value without the deprecated call
        return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)

    def notebook_start(self) -> None:
        self.start_time = self.now()
        papermill = self.nb.metadata.papermill
        papermill['start_time'] = self.start_time.isoformat()
        papermill['end_time'] = None
        papermill['duration'] = None
        papermill['exception'] = None
        for cell in self.nb.cells:
            if cell.get('cell_type') == 'code':
                cell.execution_count = None
            cell.metadata.papermill = dict(exception=None, start_time=None, end_time=None, duration=None, status=PENDING)
            if cell.get('cell_type') == 'code':
                cell.outputs = []

    def cell_start(self, cell) -> None:
        cell.metadata.papermill['start_time'] = self.now().isoformat()
        cell.metadata.papermill['status'] = RUNNING
        cell.metadata.papermill['exception'] = False

    def cell_exception(self, cell) -> None:
        cell.metadata.papermill['exception'] = True
        cell.metadata.papermill['status'] = FAILED
        self.nb.metadata.papermill['exception'] = True

    def cell_complete(self, cell) -> None:
        end_time = self.now()
        cell.metadata.papermill['end_time'] = end_time.isoformat()
        if cell.metadata.papermill.get('start_time'):
            start_time = datetime.datetime.fromisoformat(cell.metadata.papermill['start_time'])
            cell.metadata.papermill['duration'] = (end_time - start_time).total_seconds()
        if cell.metadata.papermill['status'] != FAILED:
            cell.metadata.papermill['status'] = COMPLETED

    def notebook_complete(self) -> None:
        end_time = self.now()
        papermill = self.nb.metadata.papermill
        papermill['end_time'] = end_time.isoformat()
        if papermill.get('start_time') and self.start_time is not None:
            papermill['duration'] = (end_time - self.start_time).total_seconds()
        # Cells the engine never reported on count as completed, up to a failed one.
        for cell in self.nb.cells:
            if cell.metadata.papermill['status'] == FAILED:
                break
            if cell.metadata.papermill['status'] == PENDING:
                cell.metadata.papermill['status'] = COMPLETED
