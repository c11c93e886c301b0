"""A promotion no user notices: a real DIET/TED model, a chat client every 100 ms.

With `PUT /model` a Rasa 3.6 server builds the new model on its event loop, so
every request waits for the whole load (about a minute for this bot here; the
light config used by the other deploy tests loads in 0.1 s and shows nothing).
The blue/green target loads the new model in a second server and switches the
front proxy only once it is warm. This test promotes to examples/orderbot with
its real config (from the same bot trained with the light config: only the load
of the new model can stall), starts a conversation inside the bot's form on the
old model and finishes it on the new one (the shared SQLite tracker store keeps
the form).

Reply times are reported, not asserted against a speed target: that is
bench/serving_stall.py's job (side by side with `PUT /model`). What is asserted
is that no reply failed and that no reply waited anywhere near as long as the
load took, i.e. the stall did not reach users.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from agent.targets.local_process import free_port
from agent.targets.rasa_blue_green import BlueGreenRasaTarget
from tests.support.ci import need
from tests.support.serving import ORDERBOT_GREETINGS, Chatter, orderbot_models, rasa_servers_of


@pytest.mark.rasa
def test_a_promotion_with_a_real_diet_ted_model_stalls_no_reply_and_keeps_a_form(
        tmp_path: Path, rasa_bin: Path) -> None:
    need(shutil.which("haproxy") is not None, "HAProxy is not installed (apt-get install haproxy)")
    models = orderbot_models(str(rasa_bin))
    state = tmp_path / "bg"
    target = BlueGreenRasaTarget(
        url=f"http://127.0.0.1:{free_port()}", token=None, state_dir=state,
        rasa_argv=[str(rasa_bin)], action_endpoint="http://127.0.0.1:5055/webhook",
        load_timeout=900, drain_timeout=10, warmup=["hello"])
    try:
        (bot_a, model_a), (bot_b, model_b) = models["a"], models["b"]
        target.activate(target.upload("1", model_a, print, bot_a), print)
        # A customer is inside the order form when the promotion starts.
        assert target.talk("customer", "I want a coffee") == ["Small or large?"]

        chatter = Chatter(target.url, every=0.1)
        chatter.start()
        time.sleep(2.0)
        started = time.monotonic()
        target.activate(target.upload("2", model_b, print, bot_b), print)
        switch_took = time.monotonic() - started
        time.sleep(2.0)
        chatter.done.set()
        chatter.join(timeout=150)

        # The form goes on where it was, on the new model.
        assert target.talk("customer", "large") == ["With milk?"]
        assert target.talk("customer", "yes") == ["One large coffee, coming up."]

        longest = max(chatter.latencies)
        print(f"switch took {switch_took:.1f} s; {len(chatter.latencies)} replies, "
              f"longest {longest:.3f} s, failures {len(chatter.failures)}")
        assert chatter.failures == []
        assert chatter.replies[0] == ORDERBOT_GREETINGS["a"]
        assert chatter.replies[-1] == ORDERBOT_GREETINGS["b"]
        # The load was real (a DIET/TED model takes many seconds), and no user
        # waited for it: a stalled reply would take about as long as the load.
        assert switch_took > 10, f"the model loaded in {switch_took:.1f} s: not a real stall"
        assert longest < switch_took / 4, f"a reply took {longest:.1f} s of {switch_took:.1f} s"
        assert len(rasa_servers_of(state)) == 1
    finally:
        target.stop_all(print)
    assert rasa_servers_of(state) == []
