"""A fake WeChat platform and a scripted mini-program client, for tests and local demos."""
