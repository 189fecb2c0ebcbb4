"""The local app (`python -m sae_workbench serve`): a prompt's per-token SAE features
with highlights, links to each feature's page, and a steering playground, served on
127.0.0.1 by uvicorn. `workbench` holds the model, the SAEs and the judge, loaded
once; `server` is the FastAPI app over it; `page.html` the one self-contained page."""
