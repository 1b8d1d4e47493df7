"""The environment agent loop with verl's real AgentLoopBase/AgentLoopOutput, a real tokenizer, a toy env."""

from __future__ import annotations

from verl_agent_ext.agent import STEP_METADATA_KEYS


def test_one_output_per_step_with_contract_fields(play):
    script = iter(["<think>left first</think><action>go left</action>", "I go <action>fly</action>"])
    outputs, server = play(lambda prompt: next(script, "<action>go right</action>"))

    assert len(outputs) == 5  # left (stays at 0), invalid, then three steps right
    assert [o.extra_fields["step_index"] for o in outputs] == [0, 1, 2, 3, 4]
    assert [o.extra_fields["action_text"] for o in outputs] == ["go left", "fly", "go right", "go right", "go right"]
    assert [o.extra_fields["is_action_valid"] for o in outputs] == [True, False, True, True, True]
    assert [o.extra_fields["step_reward"] for o in outputs] == [0.0, 0.0, 0.0, 0.0, 10.0]
    assert [o.extra_fields["anchor_obs"] for o in outputs] == ["cell 0", "cell 0", "cell 0", "cell 1", "cell 2"]
    assert len({o.extra_fields["traj_uid"] for o in outputs}) == 1
    # the model's own words, for SCPO's step_text=obs_response
    assert outputs[0].extra_fields["response_text"].endswith("<think>left first</think><action>go left</action>")
    assert outputs[1].extra_fields["response_text"].endswith("I go <action>fly</action>")
    for output in outputs:
        assert set(STEP_METADATA_KEYS) <= set(output.extra_fields)
        assert set(output.extra_fields) == set(outputs[0].extra_fields)
        assert output.extra_fields["episode_success"] is True
        assert output.extra_fields["task_type"] == "walk"
        assert output.extra_fields["min_global_steps"] == 3
        assert output.reward_score == 10.0  # episode return on every step
        assert output.extra_fields["reward_extra_info"] == {
            "acc": 1.0,
            "success": 1.0,
            "episode_length": 5,
            "episode_return": 10.0,
            "truncated": 0.0,
            "score": 1.0,
        }
        assert output.extra_fields["episode_truncated"] is False


def test_tokens_in_tokens_out(play, tokenizer):
    outputs, server = play(lambda prompt: "<action>go right</action>")
    assert len(outputs) == 3
    for output, call in zip(outputs, server.calls, strict=True):
        assert output.prompt_ids == call["prompt_ids"]
        assert output.response_ids == call["response_ids"]  # the engine's ids, not re-encoded text
        assert output.response_mask == [1] * len(call["response_ids"])
        assert output.response_logprobs == [-0.25] * len(call["response_ids"])
    # The prompt is the chat template around the env's text; the step's observation is in it.
    assert "You are at cell 2." in tokenizer.decode(outputs[2].prompt_ids)
    assert tokenizer.decode(outputs[2].prompt_ids).rstrip().endswith("assistant")


def test_episode_cut_at_max_steps_is_a_failure(play):
    outputs, _ = play(lambda prompt: "<action>go left</action>")
    assert len(outputs) == 6  # env.max_steps in loop_config
    assert all(o.extra_fields["episode_success"] is False for o in outputs)
    assert all(o.reward_score == 0.0 for o in outputs)
    assert all(o.extra_fields["episode_truncated"] is True for o in outputs)


def test_history_window_drops_turns_to_fit(play, tokenizer, loop_config):
    roomy, _ = play(lambda prompt: "<action>go left</action>")
    assert roomy[3].prompt_ids.count(tokenizer.encode("Earlier", add_special_tokens=False)[0]) == 2
    tight_length = len(roomy[0].prompt_ids) + 5  # room for the prompt without history only
    tight, _ = play(lambda prompt: "<action>go left</action>", config=loop_config(tight_length))
    for output in tight:
        assert len(output.prompt_ids) <= tight_length
        assert "Earlier" not in tokenizer.decode(output.prompt_ids)


def test_response_truncated_to_response_length(play, loop_config):
    long_answer = "<think>" + "very long reasoning " * 40 + "</think><action>go right</action>"
    outputs, server = play(lambda prompt: long_answer, config=loop_config(response_length=16))
    assert all(len(o.response_ids) == 16 for o in outputs)
    assert outputs[0].extra_fields["is_action_valid"] is False  # the action tag was cut off


def test_empty_response_keeps_one_masked_token_for_the_reward(play, tokenizer):
    outputs, _ = play(lambda prompt: "")
    first = outputs[0]
    assert first.response_ids == [tokenizer.eos_token_id] and first.response_mask == [0]
    assert first.extra_fields["is_action_valid"] is False


def test_verl_worker_builds_and_runs_it_by_name(tokenizer, loop_config, scripted_server, corridor_pool, monkeypatch):
    """What AgentLoopWorker._run_agent_loop does: hydra-instantiate the registry entry with verl's arguments."""
    import asyncio

    import hydra
    from verl.experimental.agent_loop.agent_loop import DictConfigWrap, ToolListWrap, _agent_loop_registry
    from verl.utils.dataset.rl_dataset import RLHFDataset

    import verl_agent_ext.verl_plugin  # noqa: F401  (the plugin registers the loop)
    from verl_agent_ext.agent import AGENT_LOOP_NAME, env_sessions

    config = loop_config()
    loop = hydra.utils.instantiate(
        config=_agent_loop_registry[AGENT_LOOP_NAME],
        trainer_config=DictConfigWrap(config=config),
        server_manager=scripted_server(lambda prompt: "<action>go right</action>"),
        tokenizer=tokenizer,
        processor=None,
        hf_model_type=None,
        dataset_cls=RLHFDataset,
        data_config=DictConfigWrap(config.data),
        tools=ToolListWrap([]),
    )
    monkeypatch.setitem(env_sessions._shared_pools, ("corridor", repr(loop.env_config)), corridor_pool)
    row = {"env_name": "corridor", "task_id": "c", "task_type": "walk", "split": "train", "uid": "u1", "session_id": 0}
    outputs = asyncio.run(loop.run({"temperature": 1.0}, **row))
    assert len(outputs) == 3 and outputs[-1].extra_fields["episode_success"] is True


def test_response_prefix_is_prefilled_in_the_prompt_and_parsed_with_the_answer(play, tokenizer, loop_config):
    # The model continues after "<action>": its answer "go right</action>" is a valid tagged action.
    outputs, server = play(lambda prompt: "go right</action>", config=loop_config(response_prefix="<action>"))
    prefix_ids = tokenizer.encode("<action>", add_special_tokens=False)
    assert len(outputs) == 3 and all(o.extra_fields["is_action_valid"] for o in outputs)
    assert outputs[-1].extra_fields["episode_success"] is True
    for output, call in zip(outputs, server.calls, strict=True):
        assert output.prompt_ids[-len(prefix_ids) :] == prefix_ids  # prefilled: part of the prompt
        assert output.response_ids == call["response_ids"]  # the trained tokens are the model's own


def test_response_prefix_survives_a_tight_prompt_window(play, tokenizer, loop_config):
    roomy, _ = play(lambda prompt: "go left</action>", config=loop_config(response_prefix="<action>"))
    tight_length = len(roomy[0].prompt_ids) - 3  # too long even without history: head and tail are kept
    tight, _ = play(lambda prompt: "go left</action>", config=loop_config(tight_length, response_prefix="<action>"))
    prefix_ids = tokenizer.encode("<action>", add_special_tokens=False)
    for output in tight:
        assert len(output.prompt_ids) <= tight_length
        assert output.prompt_ids[-len(prefix_ids) :] == prefix_ids
        assert output.extra_fields["is_action_valid"]
