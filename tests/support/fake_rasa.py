"""A stand-in for `rasa test core` that reads and writes what Rasa 3.6 does, in
milliseconds: it reads test stories only from files named `test_*` in the
`--stories` folder (as Rasa does), fails every story whose name contains
"broken" at its first action, and writes `story_report.json` and
`failed_test_stories.yml` in `--out` in Rasa's format. With `evaluate_nothing`
it evaluates no story at all, as Rasa does when the files are misnamed."""

from __future__ import annotations

import sys
from pathlib import Path

SCRIPT = r'''
import json, sys
from pathlib import Path
import yaml

args = sys.argv[1:]
assert args[:2] == ["test", "core"], args
stories = Path(args[args.index("--stories") + 1])
out = Path(args[args.index("--out") + 1])
files = sorted(stories.glob("test_*.yml")) if stories.is_dir() else [stories]
done, failed = 0, []
for path in [] if EVALUATE_NOTHING else files:
    doc = yaml.safe_load(path.read_text()) or {}
    for story in doc.get("stories") or []:
        done += 1
        if "broken" not in story["story"]:
            continue
        lines = [f"- story: {story['story']} ({path.resolve()})", "  steps:"]
        wrong = False
        for step in story["steps"]:
            if "intent" in step:
                lines.append(f"  - intent: {step['intent']}")
            elif "action" in step:
                mark = "" if wrong else "  # predicted: utter_wrong"
                wrong = True
                lines.append(f"  - action: {step['action']}{mark}")
        failed.append("\n".join(lines))
out.mkdir(parents=True, exist_ok=True)
report = {"utter_greet": {"precision": 1.0}}
if done:
    report["conversation_accuracy"] = {"accuracy": 1.0, "correct": done - len(failed),
                                       "with_warnings": 0, "total": done}
(out / "story_report.json").write_text(json.dumps(report))
(out / "failed_test_stories.yml").write_text(
    "\n".join(failed) + "\n" if failed else "# None of the test stories failed - all good!\n")
print(f"Evaluating {done} stories")
'''


def fake_rasa(folder: Path, *, evaluate_nothing: bool = False) -> Path:
    """Write the stand-in as an executable `folder/rasa` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rasa"
    path.write_text(f"#!{sys.executable}\nEVALUATE_NOTHING = {evaluate_nothing}\n{SCRIPT}",
                    encoding="utf-8")
    path.chmod(0o755)
    return path
