@problemName Stamps
@timeStamps true
@classLabel true x
@data
(0,1),(1,2):x
