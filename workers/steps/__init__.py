"""One runner per step kind; `registry` maps a claimed step to its runner."""
