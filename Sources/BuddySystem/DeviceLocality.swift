import BuddyCore
import Glibc

// Devices and the nodes they hang off, from sysfs: what `near=` places a pool by and what
// `buddypools info` lists. A storage, network or accelerator device does its DMA fastest into
// memory on its own node.

/// A PCI function or a network interface and the NUMA node it reports.
public struct DeviceLocation: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable { case pci, network }
    /// `0000:3b:00.0` or `eth0`.
    public let name: String
    public let kind: Kind
    /// The node sysfs gives (`numa_node`), nil when it says -1 (no affinity known).
    public let node: Int?
    /// For an interface, the PCI function behind it (when it is one).
    public let pciAddress: String?

    public var description: String {
        "\(name)\(pciAddress.map { " (\($0))" } ?? ""): " + (node.map { "node \($0)" } ?? "no node")
    }
}

/// Why no node could be found for a device; the text names it and what sysfs lacked.
public struct DeviceLookupError: Error, Sendable, Equatable, CustomStringConvertible {
    public let device: String
    public let reason: String
    public var description: String { "device \(device): \(reason)" }
}

extension NUMATopology {
    /// The node of a device named by PCI address (`0000:3b:00.0`, or `3b:00.0` in domain 0) or
    /// network interface (`eth0`), read from `deviceRoot` (normally /sys).
    public func node(nearDevice name: String) -> Result<Int, DeviceLookupError> {
        let location: DeviceLocation
        switch device(named: name) {
        case .success(let found): location = found
        case .failure(let error): return .failure(error)
        }
        guard let node = location.node else {
            return .failure(DeviceLookupError(device: name, reason: "sysfs reports no NUMA node for it (numa_node is -1); name the nodes instead"))
        }
        return .success(node)
    }

    /// The device a name stands for, with its node.
    public func device(named name: String) -> Result<DeviceLocation, DeviceLookupError> {
        if let address = Self.pciAddress(name) {
            let directory = "\(deviceRoot)/bus/pci/devices/\(address)"
            guard let text = SysfsFile.readLine("\(directory)/numa_node"), let node = Int(text) else {
                return .failure(DeviceLookupError(device: name, reason: "no such PCI device (no \(directory)/numa_node)"))
            }
            return .success(DeviceLocation(name: address, kind: .pci, node: node >= 0 ? node : nil, pciAddress: address))
        }
        // Interface names are at most 15 bytes and never hold a slash (IFNAMSIZ, dev_valid_name).
        guard !name.isEmpty, name.utf8.count <= 15, !name.contains("/"), name != ".", name != ".." else {
            return .failure(DeviceLookupError(device: name, reason: "neither a PCI address like 0000:3b:00.0 nor a network interface name"))
        }
        let interface = "\(deviceRoot)/class/net/\(name)"
        guard access(interface, F_OK) == 0 else {
            return .failure(DeviceLookupError(device: name, reason: "no such network interface (no \(interface))"))
        }
        // A virtio NIC's device is a virtio device with no numa_node of its own: its PCI
        // function is the parent, so the first numa_node up the device path answers.
        let device = "\(interface)/device"
        guard access(device, F_OK) == 0,
              let node = ["", "/..", "/../.."].lazy.compactMap({ SysfsFile.readLine("\(device)\($0)/numa_node").flatMap { Int($0) } }).first
        else {
            return .failure(DeviceLookupError(device: name, reason: "the interface has no device behind it (a virtual interface: no \(device)/numa_node)"))
        }
        return .success(DeviceLocation(name: name, kind: .network, node: node >= 0 ? node : nil, pciAddress: Self.pciFunction(under: device)))
    }

    /// Every PCI function and network interface sysfs lists, with its node.
    public func devices() -> [DeviceLocation] {
        var found: [DeviceLocation] = []
        for address in Self.entries("\(deviceRoot)/bus/pci/devices").sorted() {
            if case .success(let device) = device(named: address) { found.append(device) }
        }
        for interface in Self.entries("\(deviceRoot)/class/net").sorted() {
            if case .success(let device) = device(named: interface) { found.append(device) }
        }
        return found
    }

    /// `dddd:bb:dd.f` (or `bb:dd.f`, domain 0), lower-cased; nil when `text` is not one.
    static func pciAddress(_ text: String) -> String? {
        let lowered = text.lowercased()
        let full = lowered.split(separator: ":", omittingEmptySubsequences: false).count == 2 ? "0000:" + lowered : lowered
        let parts = full.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2 else { return nil }
        let slot = parts[2].split(separator: ".", omittingEmptySubsequences: false)
        guard slot.count == 2, slot[0].count == 2, slot[1].count == 1 else { return nil }
        let hex = parts[0] + parts[1] + slot[0]
        guard hex.allSatisfy(\.isHexDigit), let function = Int(slot[1]), (0...7).contains(function) else { return nil }
        return full
    }

    private static func entries(_ directory: String) -> [String] {
        guard let handle = opendir(directory) else { return [] }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != ".", name != ".." { names.append(name) }
        }
        return names
    }

    /// The last PCI address on the resolved path of a device link (the function a NIC sits on).
    private static func pciFunction(under link: String) -> String? {
        guard let resolved = realpath(link, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved).split(separator: "/").reversed().lazy.compactMap { pciAddress(String($0)) }.first
    }
}
