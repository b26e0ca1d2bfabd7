"""The signed update package: how a bundle travels from the workstation to the devices
(docs/deployment.md).

- :mod:`sarco_core.update.golden`: the golden set a bundle ships for the device's self-test;
- :mod:`sarco_core.update.signing`: Ed25519 signatures over the bundle's manifest;
- :mod:`sarco_core.update.package`: the tar file that carries a signed bundle.

``sarco sign`` writes them on the workstation; ``sarco-edge update`` reads them on the device.
"""

from sarco_core.errors import SarcoError


class DeployError(SarcoError, ValueError):
    """A deployment step that cannot go on; the message names the file or setting and a fix."""
