"""fjordgate benchmarks: each area side by side with its floor and peers, ratios reported."""
