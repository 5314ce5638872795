"""Tasks: one file per task family behind the `Task` interface (see base.py), and the registry kind → class.

Adding a task family: a file with a `Task` subclass, its kind added to `config.TaskKind`, and one line here.
"""

from __future__ import annotations

from grokscope.config import TaskConfig, TaskKind, choices
from grokscope.tasks.base import Dataset, Task
from grokscope.tasks.digits import DigitsTask
from grokscope.tasks.modular import Group, ModularTask, one_hots, tokens
from grokscope.tasks.text import TextTask

TASKS: dict[str, type[Task]] = {"modular": ModularTask, "digits": DigitsTask, "text": TextTask}
assert tuple(TASKS) == choices(TaskKind), "the task registry and config.TaskKind must list the same kinds"


def make_task(config: TaskConfig) -> Task:
    return TASKS[config.kind](config)


def make_dataset(config: TaskConfig) -> Dataset:
    """The task's split, labels and corruption (seeded by `config.seed`)."""
    return make_task(config).dataset()


__all__ = [
    "TASKS",
    "Dataset",
    "DigitsTask",
    "Group",
    "ModularTask",
    "Task",
    "TextTask",
    "make_dataset",
    "make_task",
    "one_hots",
    "tokens",
]
