"""verl plugin entry point (group `verl.plugins`): `import verl` imports this module in every verl process.

Importing it registers our advantage estimators (`gigpo`, `scpo`) in verl's registry.
"""

from verl_agent_ext.verl_plugin import estimators  # noqa: F401  (registers gigpo / scpo)
