// A compile workload for the bench's `compile` scenario: swiftc -O -c on this file under each
// malloc. Codable conformances the compiler derives, generics it specializes and enums with
// payloads make the type checker and SIL optimizer allocate heavily (about 4-5 s here).
// It is compiled, never run.
import Foundation

struct Money: Codable, Hashable { var amount: Decimal; var currency: String }
enum Side: String, Codable, CaseIterable { case buy, sell, shortSell, cover }
enum Venue: Codable, Hashable {
    case exchange(code: String, segment: Int)
    case darkPool(name: String, minimumQuantity: Int?)
    case internalCross(desk: String, trader: String, note: String?)
    case auction(kind: String, opensAt: Date, closesAt: Date)
}
struct Instrument: Codable, Hashable {
    var symbol: String; var isin: String; var venue: Venue; var tickSize: Decimal
    var lotSize: Int; var currency: String; var tags: Set<String>; var listed: Date
}
struct OrderLeg: Codable, Hashable {
    var instrument: Instrument; var side: Side; var quantity: Int; var limit: Money?
    var stop: Money?; var ratio: Int; var venueHints: [Venue]
}
struct Order: Codable, Hashable {
    var id: UUID; var account: String; var legs: [OrderLeg]; var created: Date
    var expires: Date?; var attributes: [String: String]; var parent: UUID?
    var fills: [Fill]; var state: OrderState
}
struct Fill: Codable, Hashable {
    var quantity: Int; var price: Money; var venue: Venue; var at: Date
    var fees: [String: Money]; var liquidity: Liquidity
}
enum Liquidity: String, Codable { case added, removed, routed, unknown }
enum OrderState: Codable, Hashable {
    case new, accepted(at: Date), partiallyFilled(filled: Int, remaining: Int)
    case filled(average: Money), cancelled(reason: String, by: String?)
    case rejected(code: Int, text: String, details: [String: String])
}
struct Position: Codable, Hashable {
    var instrument: Instrument; var quantity: Int; var averageCost: Money
    var realized: Money; var unrealized: Money; var lots: [Lot]
}
struct Lot: Codable, Hashable { var opened: Date; var quantity: Int; var cost: Money; var order: UUID }
struct Account: Codable, Hashable {
    var name: String; var owner: String; var positions: [Position]; var orders: [Order]
    var history: [Snapshot]; var region: Region
}
struct Snapshot: Codable, Hashable {
    var at: Date; var equity: Money; var margin: Money; var positions: [String: Int]
    var metrics: Metrics
}
struct Metrics: Codable, Hashable {
    var sharpe: Double?; var sortino: Double?; var drawdown: Double; var volatility: [String: Double]
    var returns: [Double]; var exposures: [Region: Double]
}
enum Region: String, Codable, Hashable, CaseIterable { case americas, europe, asia, africa, oceania }
struct Book<Key: Codable & Hashable, Value: Codable & Hashable>: Codable, Hashable {
    var entries: [Key: [Value]]; var ordered: [Key]; var revision: Int
    mutating func insert(_ value: Value, for key: Key) {
        if entries[key] == nil { ordered.append(key) }
        entries[key, default: []].append(value); revision += 1
    }
}
struct Envelope<Payload: Codable & Hashable>: Codable, Hashable {
    var sequence: Int; var sent: Date; var payload: Payload; var checksum: String; var replyTo: Int?
}
struct Market: Codable, Hashable {
    var accounts: Book<String, Account>; var orders: Book<UUID, Order>
    var instruments: Book<String, Instrument>; var messages: [Envelope<Order>]
    var fills: [Envelope<Fill>]; var snapshots: [Envelope<Snapshot>]
}

func roundTrip<T: Codable & Hashable>(_ value: T) throws -> Bool {
    let encoder = JSONEncoder(); encoder.outputFormatting = [.sortedKeys]; encoder.dateEncodingStrategy = .iso8601
    let decoder = JSONDecoder(); decoder.dateDecodingStrategy = .iso8601
    let data = try encoder.encode(value)
    return try decoder.decode(T.self, from: data) == value
}

func sample(_ index: Int) -> Market {
    let now = Date(timeIntervalSince1970: Double(index))
    let instrument = Instrument(symbol: "S\(index)", isin: "XS\(index)", venue: .exchange(code: "X", segment: index),
                                tickSize: Decimal(index) / 100, lotSize: 100, currency: "EUR", tags: ["a", "b"], listed: now)
    let money = Money(amount: Decimal(index), currency: "EUR")
    let leg = OrderLeg(instrument: instrument, side: Side.allCases[index % 4], quantity: index, limit: money, stop: nil,
                       ratio: 1, venueHints: [.darkPool(name: "D", minimumQuantity: nil)])
    let fill = Fill(quantity: index, price: money, venue: .auction(kind: "open", opensAt: now, closesAt: now),
                    at: now, fees: ["exchange": money], liquidity: .added)
    let order = Order(id: UUID(), account: "A", legs: [leg, leg], created: now, expires: nil, attributes: ["k": "v"],
                      parent: nil, fills: [fill], state: .partiallyFilled(filled: 1, remaining: 2))
    let metrics = Metrics(sharpe: 1, sortino: nil, drawdown: 0.1, volatility: ["d": 0.2], returns: [0.1, 0.2],
                          exposures: [.europe: 1])
    let snapshot = Snapshot(at: now, equity: money, margin: money, positions: ["S": 1], metrics: metrics)
    let position = Position(instrument: instrument, quantity: 1, averageCost: money, realized: money, unrealized: money,
                            lots: [Lot(opened: now, quantity: 1, cost: money, order: order.id)])
    var market = Market(accounts: Book(entries: [:], ordered: [], revision: 0), orders: Book(entries: [:], ordered: [], revision: 0),
                        instruments: Book(entries: [:], ordered: [], revision: 0), messages: [], fills: [], snapshots: [])
    market.accounts.insert(Account(name: "A", owner: "O", positions: [position], orders: [order],
                                   history: [snapshot], region: .europe), for: "A")
    market.orders.insert(order, for: order.id)
    market.instruments.insert(instrument, for: instrument.symbol)
    market.messages.append(Envelope(sequence: index, sent: now, payload: order, checksum: "c", replyTo: nil))
    market.fills.append(Envelope(sequence: index, sent: now, payload: fill, checksum: "c", replyTo: 1))
    market.snapshots.append(Envelope(sequence: index, sent: now, payload: snapshot, checksum: "c", replyTo: nil))
    return market
}

public func checkModels(count: Int) throws -> Int {
    try (0..<count).filter { try roundTrip(sample($0)) }.count
}
