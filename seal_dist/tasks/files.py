"""Reading a task's JSON data file, with an error that names the file and what is wrong with it."""

import json
from pathlib import Path

from seal_dist.config import UserError


def read_json(path: str, error: type[UserError], kind: str) -> object:
    """The JSON in the file; `error` (naming the file as a `kind` file) where it is missing, unreadable or not
    JSON."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise error(f"{path}: no such {kind} file") from None
    except OSError as e:
        raise error(f"{path}: cannot read the {kind} file ({e.strerror})") from None
    except (ValueError, RecursionError) as e:  # a JSONDecodeError or undecodable text
        raise error(f"{path}: not valid JSON ({e})") from None
