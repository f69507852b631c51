"""Tools that drive the web demo from outside, for its tests and benchmarks: the server as a process, a load
tester and a headless-Chromium driver of the page. They are no part of the runtime package (`mllm`)."""
