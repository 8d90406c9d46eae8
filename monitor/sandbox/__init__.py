"""Local servers speaking each platform's wire format, and the traffic they serve."""
