"""ATIF trajectories: the models keep Harbor's rules; gateway exchanges (all three protocols, from
a real gateway run) and our agents' records convert into valid ATIF with nothing lost."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest
from pydantic import ValidationError

from rollouts import atif
from rollouts.atif_agents import from_llm, from_rlm, native_of, save
from rollouts.gateway import Gateway, RunLimits, UpstreamSpec
from rollouts.gateway.scripted import Reply, ScriptedEndpoint, ToolCall
from tests.view_fixture import atif_trajectory, rlm_trajectory, shell_trajectory

CALL = ToolCall("bash", {"command": "echo hi > hello.txt"}, id="call_7")


def test_models_enforce_the_rfc_rules():
    t = atif.Trajectory.model_validate(atif_trajectory())  # the viewer's ATIF-v1.5 fixture is valid
    assert t.steps[1].tool_calls[0].function_name == "shell"
    with pytest.raises(ValidationError, match="expected 2"):
        atif.Trajectory(agent=atif.Agent(name="a", version="1"), steps=[
            atif.Step(step_id=1, source="user", message="x"), atif.Step(step_id=3, source="agent", message="y")])
    with pytest.raises(ValidationError, match="only allowed on agent steps"):
        atif.Step(step_id=1, source="user", message="x", metrics=atif.Metrics(prompt_tokens=1))
    with pytest.raises(ValidationError, match="extra"):
        atif.Step(step_id=1, source="user", message="x", bogus=1)
    with pytest.raises(ValidationError, match="ATIF-v1.x"):
        atif.Trajectory(schema_version="v2", agent=atif.Agent(name="a", version="1"))


@pytest.mark.parametrize("protocol", ["chat", "responses", "messages"])
def test_from_gateway_exchanges(protocol, tmp_path):
    script = [Reply("Writing the file.", tool_calls=(CALL,), prompt_tokens=30, completion_tokens=9),
              Reply("Done.", prompt_tokens=50, completion_tokens=2)]
    with ScriptedEndpoint(script) as ep, Gateway(UpstreamSpec("openai", ep.openai_base_url, "m",
                                                              price_model="gpt-4o")) as gw:
        g = gw.register_run("r", RunLimits(max_total_tokens=90))
        if protocol == "chat":
            oa = openai.OpenAI(base_url=g.openai_base_url, api_key=g.token, max_retries=0)
            msgs = [{"role": "system", "content": "SYS"}, {"role": "user", "content": "TASK"}]
            r = oa.chat.completions.create(model="m", messages=msgs)
            tc = r.choices[0].message.tool_calls[0]
            msgs += [r.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": tc.id, "content": "OBS-OUTPUT"}]
            oa.chat.completions.create(model="m", messages=msgs)
            send_again = lambda: oa.chat.completions.create(model="m", messages=msgs)  # noqa: E731
        elif protocol == "responses":
            oa = openai.OpenAI(base_url=g.openai_base_url, api_key=g.token, max_retries=0)
            r = oa.responses.create(model="m", instructions="SYS", input="TASK")
            fc = [o for o in r.output if o.type == "function_call"][0]
            items = [{"role": "user", "content": "TASK"}, fc.model_dump(exclude_none=True),
                     {"type": "function_call_output", "call_id": fc.call_id, "output": "OBS-OUTPUT"}]
            oa.responses.create(model="m", instructions="SYS", input=items)
            send_again = lambda: oa.responses.create(model="m", input=items)  # noqa: E731
        else:
            an = anthropic.Anthropic(base_url=g.anthropic_base_url, api_key=g.token, max_retries=0)
            msgs = [{"role": "user", "content": "TASK"}]
            m = an.messages.create(model="m", max_tokens=50, system="SYS", messages=msgs)
            tu = [b for b in m.content if b.type == "tool_use"][0]
            msgs += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tu.id, "content": "OBS-OUTPUT"}]}]
            an.messages.create(model="m", max_tokens=50, system="SYS", messages=msgs)
            send_again = lambda: an.messages.create(model="m", max_tokens=50, messages=msgs)  # noqa: E731
        with pytest.raises((openai.RateLimitError, anthropic.BadRequestError)):
            send_again()  # 91 tokens used > 90: refused
        traj = atif.trajectory_from_exchanges(gw.exchanges("r"), agent_name="codex", agent_version="0.163.0",
                                              model_name="m", session_id="run-r")
    path = tmp_path / "trajectory.json"
    atif.write(path, traj)
    back = atif.read(path)
    src = [s.source for s in back.steps]
    assert src == ["system", "user", "agent", "agent", "system"], src
    assert back.steps[0].message == "SYS" and back.steps[1].message == "TASK"
    a1 = back.steps[2]
    assert a1.message == "Writing the file." and a1.tool_calls[0].function_name == "bash"
    assert a1.tool_calls[0].arguments == CALL.arguments
    assert a1.observation.results[0].content == "OBS-OUTPUT"
    assert a1.observation.results[0].source_call_id == a1.tool_calls[0].tool_call_id
    assert (a1.metrics.prompt_tokens, a1.metrics.completion_tokens) == (30, 9) and a1.metrics.cost_usd > 0
    assert back.steps[3].message == "Done." and back.steps[3].extra["protocol"] == protocol
    assert "refused" in back.steps[4].message and back.steps[4].extra["refused"] == "limit"
    fm = back.final_metrics
    assert (fm.total_prompt_tokens, fm.total_completion_tokens, fm.total_steps) == (80, 11, 5)
    assert fm.total_cost_usd == pytest.approx((80 * 2.5 + 11 * 10) / 1e6) and fm.extra["refused"] == 1
    assert back.session_id == "run-r" and back.agent.name == "codex"


def test_shell_record_as_atif(tmp_path):
    native = shell_trajectory(3)
    native["messages"] = [{"role": "system", "content": "SYSTEM PROMPT"}, {"role": "user", "content": "THE TASK"}]
    native["usage"] = {"prompt_tokens": 300, "completion_tokens": 30, "calls": 3, "cost_usd": None}
    save("shell", tmp_path / "t.json", native)
    raw = json.loads((tmp_path / "t.json").read_text())
    t = atif.Trajectory.model_validate(raw)
    assert [s.source for s in t.steps] == ["system", "user", "agent", "agent", "agent"]
    step = t.steps[2]
    first = native["steps"][0]
    assert step.tool_calls[0].arguments == {"command": first["action"]}
    assert step.observation.results[0].content == first["output"]
    assert step.extra["exit_code"] == first["exit_code"]
    assert t.final_metrics.total_prompt_tokens == 300 and t.final_metrics.total_cost_usd is None
    assert native_of(raw) == native  # the full record is kept


def test_rlm_and_llm_records_as_atif():
    native = rlm_trajectory()
    t = from_rlm(native)
    agent_steps = [s for s in t.steps if s.source == "agent"]
    assert len(agent_steps) == len(native["root"]["iterations"])
    cell = native["root"]["iterations"][0]["cells"][0]
    assert agent_steps[0].tool_calls[0].arguments == {"code": cell["code"]}
    assert agent_steps[0].observation.results[0].content.startswith(cell["stdout"])
    assert agent_steps[0].extra["cells"][0]["sub_calls"] == cell["sub_calls"]
    assert t.extra["rollouts"] == native
    llm = {"schema_version": 1, "agent": "llm", "model": "q", "question": "Q?", "response": "A!", "answer": "A!",
           "prompt_tokens": 10, "completion_tokens": 2, "truncation": {"truncated": False}, "attempts": [],
           "usage": {"prompt_tokens": 10, "completion_tokens": 2, "calls": 1, "cost_usd": 0.0}}
    t = from_llm(llm)
    assert [(s.source, s.message) for s in t.steps] == [("user", "Q?"), ("agent", "A!")]
    assert t.final_metrics.total_cost_usd == 0.0
