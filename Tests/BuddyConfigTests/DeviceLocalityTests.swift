import BuddyPools
import FakeMachines
import Foundation
import Testing

/// `near=` and the device list, against a copy of sysfs's layout made for the test: a PCI
/// function on node 1, one with no node (-1), an interface behind the first (directly, and as
/// a virtio device below it), and a virtual one.
/// (FourNodeGuestTests.Placement places a pool near a real device of a guest.)
@Suite("Devices and their nodes")
struct DeviceLocalityTests {
    static func fakeSysfs() throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("buddypools-sysfs-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        let manager = FileManager.default
        for (address, node) in [("0000:3b:00.0", "1"), ("0000:00:1f.0", "-1")] {
            try manager.createDirectory(atPath: "\(root)/bus/pci/devices/\(address)", withIntermediateDirectories: true)
            try "\(node)\n".write(toFile: "\(root)/bus/pci/devices/\(address)/numa_node", atomically: false, encoding: .utf8)
        }
        try manager.createDirectory(atPath: "\(root)/class/net/eth9", withIntermediateDirectories: true)
        try manager.createSymbolicLink(atPath: "\(root)/class/net/eth9/device", withDestinationPath: "../../../bus/pci/devices/0000:3b:00.0")
        // A virtio NIC: its device is a virtio device under the PCI function, without numa_node.
        try manager.createDirectory(atPath: "\(root)/bus/pci/devices/0000:3b:00.0/virtio5", withIntermediateDirectories: true)
        try manager.createDirectory(atPath: "\(root)/class/net/eth8", withIntermediateDirectories: true)
        try manager.createSymbolicLink(atPath: "\(root)/class/net/eth8/device", withDestinationPath: "../../../bus/pci/devices/0000:3b:00.0/virtio5")
        try manager.createDirectory(atPath: "\(root)/class/net/lo", withIntermediateDirectories: true)
        return root
    }

    static func machine(_ root: String) -> NUMATopology {
        var topology = FakeTopology.machine
        topology.deviceRoot = root
        return topology
    }

    @Test("PCI addresses (with or without the domain, any case) and interfaces resolve to the node sysfs gives")
    func resolves() throws {
        let root = try Self.fakeSysfs()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let topology = Self.machine(root)
        for name in ["0000:3b:00.0", "3b:00.0", "0000:3B:00.0", "eth9", "eth8"] {
            #expect(topology.node(nearDevice: name) == .success(1), "\(name)")
        }
        #expect(try topology.device(named: "eth9").get().pciAddress == "0000:3b:00.0")
        #expect(try topology.device(named: "eth8").get().pciAddress == "0000:3b:00.0", "the PCI function above the virtio device")
        let listed = topology.devices()
        #expect(listed.map(\.name) == ["0000:00:1f.0", "0000:3b:00.0", "eth8", "eth9"], "\(listed)")
        #expect(listed.map(\.node) == [nil, 1, 1, 1])
    }

    @Test("a device with no node, one that does not exist, a virtual interface and a bad name are errors naming them",
          arguments: [("0000:00:1f.0", "numa_node is -1"), ("0000:99:00.0", "no such PCI device"), ("lo", "no device behind it"),
                      ("wlan7", "no such network interface"), ("a/b", "neither a PCI address"), ("0000:3b:00.8", "no such network interface"),
                      ("", "neither a PCI address")])
    func errors(name: String, reason: String) throws {
        let root = try Self.fakeSysfs()
        defer { try? FileManager.default.removeItem(atPath: root) }
        guard case .failure(let error) = Self.machine(root).node(nearDevice: name) else {
            Issue.record("\(name) resolved")
            return
        }
        #expect(error.device == name && error.description.contains(reason), "\(error)")
    }

    @Test("near= places the pool on the device's node; a nodes key must agree, and near with weights is refused")
    func configuration() throws {
        let root = try Self.fakeSysfs()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let topology = Self.machine(root)
        for value in ["n:size=4M,page=4K,near=eth9", "n:size=4M,page=4K,near=0000:3b:00.0,nodes=1", "n:size=4M,page=4K,nodes=1,near=3b:00.0"] {
            let plan = try #require(try PoolSet.plan(environment: ["BUDDYPOOLS": value], topology: topology).first)
            #expect(plan.configuration.nodes == [1] && plan.configuration.nearDevice != nil, "\(value)")
        }
        let refused: [(String, String, String)] = [
            ("n:size=4M,near=lo", "near=lo", "no device behind it"),
            ("n:size=4M,near=0000:00:1f.0", "near=0000:00:1f.0", "numa_node is -1"),
            ("n:size=4M,nodes=0,near=eth9", "nodes=0", "node 1, the node of eth9"),
            ("n:size=4M,near=eth9,weights=0:1,1:1", "weights=0:1,1:1", "either near=eth9 or weights"),
        ]
        for (value, token, expected) in refused {
            do {
                _ = try PoolSet.plan(environment: ["BUDDYPOOLS": value], topology: topology)
                Issue.record("accepted \(value)")
            } catch {
                #expect(error.token == token && error.expected.contains(expected), "\(value): \(error)")
            }
        }
    }
}
