"""System prompts, one Markdown file each; `assistant.prompting` loads and fills them."""
