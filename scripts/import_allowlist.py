"""An import-linter contract type, ``allowlist``: the source packages may import from the
``root`` package only the ``allowed`` modules (and their submodules). Every other module of
the root is private, whatever its name: a new private module needs no new rule.

Used by pyproject.toml's plugin-boundary contract (``lint-imports``, run by ./test.sh).
"""

from __future__ import annotations

from importlinter import Contract, ContractCheck, fields, output


class AllowListContract(Contract):
    type_name = "allowlist"

    source_modules = fields.ListField(subfield=fields.StringField())
    root = fields.StringField()
    allowed = fields.ListField(subfield=fields.StringField())

    def check(self, graph, verbose: bool) -> ContractCheck:
        allowed = list(self.allowed)  # type: ignore[call-overload]
        root = str(self.root)
        found = []
        for source in self.source_modules:  # type: ignore[attr-defined]
            for importer in sorted({source, *graph.find_descendants(source)}):
                for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                    if imported != root and not imported.startswith(root + "."):
                        continue
                    if imported == root or any(imported == a or imported.startswith(a + ".")
                                               for a in allowed):
                        continue
                    lines = [d["line_number"] for d in
                             graph.get_import_details(importer=importer, imported=imported)]
                    found.append((importer, imported, lines))
        return ContractCheck(kept=not found, metadata={"found": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for importer, imported, lines in check.metadata["found"]:
            output.print_error(f"{importer} imports {imported} (l. {', '.join(map(str, lines))}):"
                               " not in the public API (tts_ops.plugin and PUBLIC_MODULES)",
                               bold=False)
            output.new_line()
