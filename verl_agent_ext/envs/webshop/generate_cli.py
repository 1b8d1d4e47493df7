"""`verl-agent-ext webshop-generate`: write a generated WebShop catalog in the original file schema."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "webshop-generate",
        help="write a generated WebShop catalog (products + instructions, original file schema)",
        description="Write items_shuffle.json, items_ins_v2.json, items_human_ins.json and GENERATED.json to --out. "
        "The data is generated (not the original WebShop products): results on it are labelled as such.",
    )
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--products", type=int, default=1000, help="number of products (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    import time

    from verl_agent_ext.envs.webshop.catalog import load_catalog
    from verl_agent_ext.envs.webshop.generate import write_catalog
    from verl_agent_ext.errors import UserError, writable_folder

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log = logging.getLogger("webshop-generate")
    if args.products < 1:
        raise UserError(f"--products must be at least 1, got {args.products}")
    writable_folder(args.out, "--out")
    start = time.perf_counter()
    log.info("generating %d products (seed %d) into %s", args.products, args.seed, args.out)
    out_dir = write_catalog(args.out, args.products, args.seed)
    catalog = load_catalog(out_dir)
    categories: dict[str, int] = {}
    for goal in catalog.goals:
        categories[goal.category] = categories.get(goal.category, 0) + 1
    log.info(
        "wrote %s: %d products, %d human-style goals %s in %.1f s",
        out_dir,
        len(catalog.products),
        len(catalog.goals),
        dict(sorted(categories.items())),
        time.perf_counter() - start,
    )
    return 0
