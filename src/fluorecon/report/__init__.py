"""Reports: matplotlib figures (Agg, no pyplot state) and self-contained HTML pages."""
