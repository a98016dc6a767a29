// BuddyPools: what users `import`. The layers are separate targets (see Package.swift and
// docs/architecture.md); this module re-exports the public face of each, so code written
// against `import BuddyPools` does not need to know which layer a name lives in.
@_exported import BuddyCaches
@_exported import BuddyConfig
@_exported import BuddyCore
@_exported import BuddySystem
@_exported import MemoryPools
