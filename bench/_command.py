"""A study's console script by its module, as its installed entry point runs it, for a machine where the package is not
installed (bench/gpu_study.sh): `python3 bench/_command.py MODULE PROG ARGS...` runs `fsq_lit.MODULE.main` on ARGS as PROG.
fastcore's `call_parse` reads the command line only when called from a script file, so `python3 -c` would not do."""
import importlib, sys

if __name__ == "__main__":
    module, prog, *args = sys.argv[1:]
    sys.argv = [prog, *args]
    importlib.import_module(f"fsq_lit.{module}").main()
