"""The kernel side of a program: loading it with BCC (``loader``), running frames
through it with BPF_PROG_TEST_RUN (``bpf_test_run``) and reading and writing its
maps by the manifest's layouts (``maps``), their entries in bounded chunks
(``batch``). Attaching to interfaces will live here.

May import: abi.
"""
