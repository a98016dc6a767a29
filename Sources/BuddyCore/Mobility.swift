/// How an allocation may be treated when its superblock is wanted back.
public enum Mobility: Int, Sendable, CaseIterable, Codable, CustomStringConvertible {
    /// Stays where it is until freed (the default).
    case unmovable = 0
    /// The pool may copy it elsewhere: through a `MovableHandle`, or through the relocation
    /// handler its owner registered. Without either, it is only a grouping hint.
    case movable = 1
    /// Its owner can drop it when a registered shrinker is asked to free memory.
    case reclaimable = 2

    public var description: String {
        switch self {
        case .unmovable: "unmovable"
        case .movable: "movable"
        case .reclaimable: "reclaimable"
        }
    }
}
