"""kiln's strategy: Mitogen's linear strategy when Mitogen loads, else Ansible's own linear one.

Enabled by kiln for bakes (ANSIBLE_STRATEGY=kiln_linear) unless a role or the project turns
Mitogen off. Mitogen keeps one Python interpreter in the builder for the whole play instead of
starting one per module, which is most of a simple task's cost. It follows ansible-core's
internals, so a new ansible-core can break it: then this module falls back to the linear
strategy, warns, and says why in KILN_MITOGEN_FALLBACK, which kiln's callback reports.
"""

from __future__ import annotations

from ansible.utils.display import Display

DOCUMENTATION = """
    name: kiln_linear
    short_description: Mitogen's linear strategy, or Ansible's when Mitogen cannot load
    description:
      - Task by task on every host, like linear; through Mitogen when it loads.
"""

try:
    # Mitogen checks the ansible-core release and patches Ansible's loaders on import.
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy
except Exception as error:  # any failure to load means: run without it
    from ansible.plugins.strategy.linear import StrategyModule as _Base

    MITOGEN_FALLBACK = f"{type(error).__name__}: {error}"
    Display().warning(
        f"kiln: Mitogen cannot load ({MITOGEN_FALLBACK}); running Ansible's linear strategy"
    )

    class StrategyModule(_Base):
        """Ansible's linear strategy: Mitogen did not load."""

        KILN_MITOGEN = False
        KILN_MITOGEN_FALLBACK = MITOGEN_FALLBACK

else:
    MITOGEN_FALLBACK = ""
    _Linear = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)

    class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Linear):  # type: ignore[no-redef]
        """Mitogen's linear strategy."""

        KILN_MITOGEN = True
        KILN_MITOGEN_FALLBACK = ""
