from importlib import metadata


def package_version() -> str:
    try:
        return metadata.version("sparsewave")
    except metadata.PackageNotFoundError:
        return "0+unknown"
