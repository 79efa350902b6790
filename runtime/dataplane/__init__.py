"""The kernel side of a program: loading it with BCC (``loader``; why a load failed:
``load_errors``; outliving LLVM ending the process: ``fatal_exit``), running frames
through it with BPF_PROG_TEST_RUN (``bpf_test_run``) and reading and writing its
maps by the manifest's layouts (``maps``), their entries in bounded chunks
(``batch``). Attaching to interfaces will live here.

May import: abi.
"""
