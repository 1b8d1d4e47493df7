"""The policy model both trainers share: loading it (`model`) and serving generation requests from it (`hf_server`).

`train-local` calls them in-process; verl's `transformers` rollout backend (`verl_plugin.hf_rollout`) wraps the same
server in a Ray actor. Neither trainer package imports the other: both import this one.
"""
