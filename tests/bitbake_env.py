"""Run the real BitBake (PyPI ``bitbake-setup``) in-process over the real meta-xenguest layer.

There is no OE-core here: :mod:`bitbake_standin` holds a small stand-in "core"
layer with OE-core's names and meanings for what meta-xenguest relies on.
:class:`BitBakeEnv` writes it with a build folder, parses recipes
with BitBake's own cooker data builder and runs their tasks with
``bb.build.exec_task``.  There is no runqueue: :meth:`BitBakeEnv.run_until`
orders a recipe's tasks from their ``deps`` flags.
"""

import contextlib
import logging
import os
import sys
import textwrap
import types
from typing import Dict, Iterator, List, Optional, Tuple, Union

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYER = os.path.join(ROOT, "meta-xenguest")
LIB = os.path.join(LAYER, "lib")


def install_stand_ins() -> None:
    """Register the hashserv/prserv modules bb imports (not in the wheel).

    They are enough while BB_HASHSERVE and PRSERV_HOST stay unset.
    """
    if "hashserv" not in sys.modules:
        hashserv = types.ModuleType("hashserv")
        client = types.ModuleType("hashserv.client")

        def is_valid_unihash(value: str) -> bool:
            return bool(value) and all(c in "0123456789abcdef" for c in value.lower())

        def create_client(*args: object, **kwargs: object) -> None:
            raise RuntimeError("no hash equivalence server in the tests")

        hashserv.is_valid_unihash = is_valid_unihash
        hashserv.create_client = create_client
        hashserv.client = client
        sys.modules["hashserv"] = hashserv
        sys.modules["hashserv.client"] = client
    if "prserv" not in sys.modules:
        prserv = types.ModuleType("prserv")
        serv = types.ModuleType("prserv.serv")

        class PRServiceConfigError(Exception):
            pass

        serv.PRServiceConfigError = PRServiceConfigError
        serv.auto_start = lambda d: None
        serv.auto_shutdown = lambda: None
        prserv.serv = serv
        sys.modules["prserv"] = prserv
        sys.modules["prserv.serv"] = serv


install_stand_ins()
if sys.path[0] != LIB:
    sys.path.insert(0, LIB)

import bb  # noqa: E402
import bb.build  # noqa: E402
import bb.cache  # noqa: E402
import bb.cookerdata  # noqa: E402
import bb.data  # noqa: E402
import bb.event  # noqa: E402
import bb.fetch2  # noqa: E402
import bb.parse  # noqa: E402
import bb.parse.parse_py.BBHandler  # noqa: E402
import xenguest  # noqa: E402
from bitbake_standin import (BITBAKE_OF_SERIES, CORE_FILES, MACHINES,  # noqa: E402
                             VIRTUALIZATION_LAYER_CONF, conf_text, cooker_data_builder,
                             machine_text)

if os.path.dirname(os.path.dirname(os.path.abspath(xenguest.__file__))) != LIB:
    raise ImportError(f"xenguest is imported from {xenguest.__file__}, not from the layer {LIB}")

def write_tree(root: str, files: Dict[str, Union[str, bytes]]) -> None:
    """Write *files* (relative path -> text or bytes) under *root*."""
    for rel, content in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        with open(path, "wb") as f:
            f.write(data)


@contextlib.contextmanager
def real_std_streams() -> Iterator[None]:
    """exec_task dups stdin/stdout/stderr file descriptors: pytest's capture has none."""
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = sys.__stdin__, sys.__stdout__, sys.__stderr__
    try:
        yield
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved


def runqueue_mcdepends(d: "bb.data_smart.DataSmart", task: str, config: str) -> List[str]:
    """The ``mcdepends`` entries of *task* the runqueue turns into dependencies.

    BitBake's rule (runqueue ``add_mc_dependencies``, unchanged since 2.0): an
    entry ``mc:FROM:TO:RECIPE:TASK`` counts only in the configuration whose key
    is FROM; the keys are ``""`` for the default configuration and the
    multiconfig names otherwise.  Other entries are dropped without a word.
    """
    entries = (d.getVarFlag(task, "mcdepends") or "").split()
    return [e for e in entries if e.split(":")[1] == config]


class BitBakeEnv:
    """A build folder with the stand-in core, meta-xenguest and a test layer.

    *series* chooses the stand-in core's release and the BitBake generation it
    builds with (:data:`bitbake_standin.BITBAKE_OF_SERIES`).  *virtualization*
    adds a stand-in meta-virtualization (its collection name only), which
    enables the layer's recipes for Xen hosts (``BBFILES_DYNAMIC``).
    """

    def __init__(self, root: str, series: str = "wrynose", machine: str = "qemuarm64",
                 local_conf: str = "", multiconfigs: Optional[Dict[str, str]] = None,
                 with_layer: bool = True, virtualization: bool = False) -> None:
        self.root = root
        self.series = series
        self.machine = machine
        self.core = os.path.join(root, "standin-core")
        self.test_layer = os.path.join(root, "meta-test")
        self.build = os.path.join(root, "build")
        self.layer = LAYER
        core_files = dict(CORE_FILES)
        core_files["conf/bitbake.conf"] = conf_text(series)
        for name in MACHINES:
            core_files[f"conf/machine/{name}.conf"] = machine_text(name, series)
        write_tree(self.core, core_files)
        write_tree(self.test_layer, {"conf/layer.conf": textwrap.dedent("""\
            BBPATH .= ":${LAYERDIR}"
            BBFILES += "${LAYERDIR}/recipes-*/*/*.bb"
            BBFILE_COLLECTIONS += "test"
            BBFILE_PATTERN_test = "^${LAYERDIR}/"
            LAYERDEPENDS_test = "core"
            LAYERSERIES_COMPAT_test = "${STANDIN_SERIES_NAME}"
            """)})
        layers = [self.core] + ([self.layer] if with_layer else []) + [self.test_layer]
        if virtualization:
            layers.append(os.path.join(root, "standin-virtualization"))
            write_tree(layers[-1], {"conf/layer.conf": VIRTUALIZATION_LAYER_CONF})
        mcs = multiconfigs or {}
        conf = {
            "conf/bblayers.conf": textwrap.dedent(f"""\
                BBPATH = "${{TOPDIR}}"
                STANDIN_SERIES_NAME = "{series}"
                BBLAYERS = "{' '.join(layers)}"
                """),
            "conf/local.conf": f'MACHINE ??= "{machine}"\n' + local_conf
            + (f'BBMULTICONFIG = "{" ".join(mcs)}"\n' if mcs else ""),
        }
        conf.update({f"conf/multiconfig/{n}.conf": t for n, t in mcs.items()})
        write_tree(self.build, conf)
        self.builder = self._builder()

    def _builder(self) -> "bb.cookerdata.CookerDataBuilder":
        old = os.getcwd()
        os.chdir(self.build)
        try:
            config = bb.cookerdata.CookerConfiguration()
            config.env = dict(os.environ)
            builder = cooker_data_builder(BITBAKE_OF_SERIES[self.series])(config)
            builder.parseBaseConfiguration()
        finally:
            os.chdir(old)
        bb.fetch2.fetcher_init(builder.data)
        return builder

    def write_recipe(self, name: str, text: str,
                     files: Optional[Dict[str, Union[str, bytes]]] = None) -> str:
        """Write recipes-test/<name>/<name>.bb (and files/ next to it); return its path."""
        folder = os.path.join(self.test_layer, "recipes-test", name.split("_")[0])
        write_tree(folder, {f"{name}.bb": textwrap.dedent(text)})
        write_tree(os.path.join(folder, "files"), files or {})
        return os.path.join(folder, f"{name}.bb")

    def collect_recipes(self, mc: str = "") -> Dict[str, str]:
        """The recipes BitBake finds in configuration *mc* (PN -> file), with its own
        collection handling (LAYERDEPENDS, priorities) and file collector (BBFILES,
        BBFILES_DYNAMIC)."""
        import bb.cooker

        d = self.builder.mcdata[mc]
        cooker = types.SimpleNamespace(data=d)
        bb.cooker.BBCooker.handleCollections(cooker, d.getVar("BBFILE_COLLECTIONS"))
        collector = bb.cooker.CookerCollectFiles(cooker.bbfile_config_priorities, mc)
        files = collector.collect_bbfiles(d, None)[0]
        return {bb.parse.vars_from_file(f, d)[0]: f for f in files}

    def parse(self, recipe: str, variant: str = "", mc: str = "") -> "bb.data_smart.DataSmart":
        """Parse *recipe* (a BBCLASSEXTEND variant, in multiconfig *mc*) with BitBake."""
        virtual = bb.cache.realfn2virtual(recipe, variant, mc)
        layer = "xenguest" if recipe.startswith(self.layer + os.sep) else "test"
        old = os.getcwd()
        os.chdir(self.build)
        try:
            return self.builder.parseRecipe(virtual, [], layer)
        finally:
            os.chdir(old)

    def run_task(self, recipe: str, task: str, d: "bb.data_smart.DataSmart") -> Tuple[int, str]:
        """Run one task in-process; return its exit status and its log.

        Like bitbake-worker, sets BB_CURRENTTASK; ``nostamp`` avoids the stamp
        code that needs the runqueue's signature data.
        """
        d.setVarFlag(task, "nostamp", "1")
        d.setVar("BB_CURRENTTASK", task[len("do_"):])
        old = os.getcwd()
        with real_std_streams():
            try:
                rc = bb.build.exec_task(recipe, task, d)
            finally:
                os.chdir(old)
        # Without a UI, BitBake queues every event it fires: drop them.
        del bb.event.ui_queue[:]
        log = os.path.join(d.getVar("T"), f"log.{task}")
        text = open(log, errors="replace").read() if os.path.exists(log) else ""
        return rc, text

    @staticmethod
    def task_order(d: "bb.data_smart.DataSmart", target: str) -> List[str]:
        """The tasks *target* needs (from the ``deps`` flags), in a valid order."""
        order: List[str] = []
        tasks = set(d.getVar("__BBTASKS", False) or [])

        def visit(task: str, path: Tuple[str, ...]) -> None:
            if task in order or task not in tasks:
                return
            if task in path:
                raise RuntimeError(f"task loop: {' -> '.join(path + (task,))}")
            for dep in d.getVarFlag(task, "deps", False) or []:
                visit(dep, path + (task,))
            order.append(task)

        visit(target, ())
        return order

    def run_until(self, recipe: str, d: "bb.data_smart.DataSmart", target: str) -> Dict[str, str]:
        """Run every task *target* needs, in order (noexec ones skipped); return the logs.

        Raises AssertionError naming the first failing task, with its log.
        """
        logs: Dict[str, str] = {}
        for task in self.task_order(d, target):
            if d.getVarFlag(task, "noexec", False):
                continue
            rc, log = self.run_task(recipe, task, d)
            logs[task] = log
            if rc != 0:
                raise AssertionError(f"{task} failed:\n{log}")
        return logs


@contextlib.contextmanager
def bb_messages(level: int = logging.INFO) -> Iterator[List[str]]:
    """Collect the messages BitBake logs (bb.note, bb.warn, bb.fatal, ...)."""
    messages: List[str] = []

    class Collector(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Collector(level)
    logger = logging.getLogger("BitBake")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def parse_failure(env: BitBakeEnv, recipe: str, variant: str = "", mc: str = "") -> str:
    """Parse a recipe that must fail (bb.fatal at parse time); return BitBake's messages."""
    with bb_messages(logging.ERROR) as messages:
        try:
            env.parse(recipe, variant, mc)
        except bb.BBHandledException:
            return "\n".join(messages)
    raise AssertionError(f"{recipe} parsed without error")


def clear_class_cache() -> None:
    """Forget parsed classes and recipes (after a test rewrote one)."""
    bb.parse.parse_py.BBHandler.cached_statements.clear()


def signature_inputs(d: "bb.data_smart.DataSmart", recipe: str, task: str) -> Tuple[str, List]:
    """What BitBake's signature of *task* is made of: the variable part (basehash)
    and the file-checksums part, computed with BitBake's own functions."""
    ignored = set((d.getVar("BB_BASEHASH_IGNORE_VARS") or "").split())
    tasklist, gendeps, lookupcache = bb.data.generate_dependencies(d, ignored)
    _, basehash = bb.data.generate_dependency_hash(tasklist, gendeps, lookupcache, ignored, recipe)
    files = d.getVarFlag(task, "file-checksums") or ""
    checksums = bb.fetch2.get_file_checksums(files, d.getVar("PN"), set())
    return basehash[f"{recipe}:{task}"], checksums
